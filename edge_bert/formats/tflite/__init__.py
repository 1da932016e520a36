"""LiteRT (.tflite): litert-torch export, LiteRT Quantizer recipes, GPTQ rounding, Android extras."""
