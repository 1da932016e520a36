"""Latency on the device: the bench protocol, the roofline (peak GEMM probes) and thermal behaviour."""
