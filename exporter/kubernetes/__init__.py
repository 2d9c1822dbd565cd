"""Kubernetes pod attribution: which container holds which MIG device, from the kubelet pod-resources API.

`attribution` is pure (types and device-ID resolution); `podresources` is the gRPC client
and `refresher` the background loop. `api_pb2*` are generated from `api.proto` (the command
is in that file).
"""
