"""What the command-line tools share: option handling, the training run, reports, plots, the web demo."""
