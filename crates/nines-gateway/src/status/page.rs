//! The status page: `GET /status` (HTML, assets embedded) and `GET /status.json`.
