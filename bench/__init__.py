"""The benchmark suite: securechat against a minimal `websockets` relay, on real sockets.

``python -m bench`` runs it; docs/benchmarks.md says what each scenario measures.
"""
