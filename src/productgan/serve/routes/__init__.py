"""The REST API's route modules, each ``routes(service) -> APIRouter``: `status.py` (/health,
/info), `images.py` (seed grids, single images), `explore.py` (named images, walks, variants,
zips), `training.py` (neighbours, training images, projection), `pages.py` (the studio, /docs)."""
