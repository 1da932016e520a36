"""OpenVINO IR (.xml + .bin): openvino.convert_model export, NNCF recipes."""
