"""Training of the demonstration models on MNIST: the U-Net and the digit feature network.

The feature network itself belongs to the metric: ``skiptune.objectives`` defines and loads it.
"""
