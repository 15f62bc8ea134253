"""seqgrid measuring: workloads, FLOP counts, roofline, timer, gap metrics, CLI, asv suite."""
