"""Fine-tuning: pretrained weights recovered offline, task-aligned assignment, the detection loss."""
