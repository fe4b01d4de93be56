"""What an export ships and runs: decoding (images), NumPy operations (ops), packed forests and
the ONNX predictor (exported). These modules import only each other, relatively."""
