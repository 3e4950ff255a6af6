"""One APIRouter per resource; cloud/api/app.py includes each."""
