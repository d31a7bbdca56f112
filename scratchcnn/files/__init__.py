"""Files and runs: model files, checkpoints, atomic writes, run folders, transfer learning."""
