"""The names of the same-run comparisons ``cxl-harness bench`` runs, in their order (a light
module: the command line lists them without importing the benchmarks)."""

COMPARISONS: tuple[str, ...] = (
    "fence_amortisation", "order2_vs_order0", "order5_vs_order2", "order2_vs_nt_copy", "per_scanner_vs_mutex",
    "header_fence_ablation", "drain_batches_per_s", "reservation_per_epoch_vs_per_batch",
    "sustained_vs_ceiling")
