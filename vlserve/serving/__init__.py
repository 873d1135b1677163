"""Serving: the Triton python-backend plumbing, the tritonserver launcher and the typed client.

(Deliberately not named ``triton``: a ``triton`` package on ``sys.path`` shadows the compiler
package torch imports.)
"""
