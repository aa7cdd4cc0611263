"""The demo pipeline: simulate the default scenario, scan it, score it, write the report."""

from distillguard.demo._pipeline import DemoResult, Progress, run_demo

__all__ = ["DemoResult", "Progress", "run_demo"]
