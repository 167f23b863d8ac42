"""The handler runtime: pooled worker greenlets, the await_ bridge, admission control."""
