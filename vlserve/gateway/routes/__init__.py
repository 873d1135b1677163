"""The gateway's routes, one module per group (each an APIRouter)."""
