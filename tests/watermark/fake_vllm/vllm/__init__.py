"""A stand-in for the few names of vLLM's V1 logits-processor interface that the adapter uses,
as vLLM documents them (vllm/v1/sample/logits_processor/interface.py): vLLM itself needs a GPU
build and is not installed in CI."""
