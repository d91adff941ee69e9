"""Studies: many variants x seeds under identical settings, aggregated over seeds."""
