"""An overview plot of a simulated log: who sends what when, and the model switch."""

from __future__ import annotations

from pathlib import Path


def plot_overview(log_dir: str | Path, path: str | Path | None = None) -> Path:
    """Plot hourly events per persona group and campaign, and each campaign's share of traffic
    on the newest model. Writes a PNG (default `LOG_DIR/overview.png`) and returns its path."""
    import duckdb
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(log_dir)
    out = Path(path) if path is not None else d / "overview.png"
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    ev = f"read_parquet('{(d / 'events').as_posix()}/*.parquet')"
    hourly = con.execute(
        f"""select date_trunc('hour', e.ts) h,
                   case when l.label = 'distill' then l.campaign_id else l.persona end g, count(*) n
            from {ev} e join read_parquet(?) l using (account_id) group by all order by h""",
        [str(d / "labels.parquet")],
    ).fetchall()
    newest = con.execute(
        "select model, released_at from read_parquet(?) order by released_at desc limit 1",
        [str(d / "models.parquet")],
    ).fetchone()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    ax1.set_prop_cycle(color=list(plt.get_cmap("tab20").colors))  # type: ignore[attr-defined]
    groups: dict[str, tuple[list[object], list[int]]] = {}
    for h, g, n in hourly:
        xs, ys = groups.setdefault(str(g), ([], []))
        xs.append(h)
        ys.append(int(n))
    for g, (xs, ys) in sorted(groups.items(), key=lambda kv: -sum(kv[1][1])):
        ax1.plot(xs, ys, label=g, linewidth=1)  # type: ignore[arg-type]
    ax1.set_yscale("log")
    ax1.set_ylabel("events per hour")
    ax1.set_title(f"{d.name}: benign personas and campaigns")
    ax1.legend(fontsize=7, ncol=3)
    if newest is not None:
        share = con.execute(
            f"""select date_trunc('hour', e.ts) h, l.campaign_id, avg((e.model = ?)::int)
                from {ev} e join read_parquet(?) l using (account_id) where l.label = 'distill'
                group by all order by h""",
            [newest[0], str(d / "labels.parquet")],
        ).fetchall()
        camp: dict[str, tuple[list[object], list[float]]] = {}
        for h, c, s in share:
            xs2, ys2 = camp.setdefault(str(c), ([], []))
            xs2.append(h)
            ys2.append(float(s))
        for c, (xs2, ys2) in sorted(camp.items()):
            ax2.plot(xs2, ys2, label=c, linewidth=1)  # type: ignore[arg-type]
        ax2.axvline(newest[1], color="k", linestyle="--", linewidth=1)
        ax2.set_ylabel(f"share on {newest[0]}")
        ax2.set_ylim(-0.02, 1.02)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
