"""image-recognition-job: find, train, evaluate and explain the best CNN for an image dataset."""

__version__ = "0.1.0"
