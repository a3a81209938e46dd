"""Analysis layer: metrics from stored rows, reports, plots, predictor, routing. Never needs a GPU."""
