"""The library: images, vocabulary, CTC decoding, metrics, the network and its runtimes.

Pure functions and classes; no step, file layout or MLflow here.
"""
