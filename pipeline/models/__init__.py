"""Networks: the backbone registry and builders, converted ImageNet weights, losses, checkpoint
loading and flip-TTA inference shared by training, prediction, the page and similarity search."""
