"""MNIST digit classification: data, four networks, training, evaluation, prediction."""
