"""Questions in, hits out: both legs scored, fused, ranked by paragraph, judged for confidence; and evaluated."""
