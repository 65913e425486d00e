"""Deployment: ONNX export and runtime (:mod:`~irfoundry.deploy.onnx`), tiled inference on large frames
(:mod:`~irfoundry.deploy.tiling`), frame sources and result sinks for images, folders, video and streams
(:mod:`~irfoundry.deploy.frames`, :mod:`~irfoundry.deploy.sinks`). Every mode runs the network through the
one inference path, :class:`irfoundry.engine.inference.Predictor`.
"""
