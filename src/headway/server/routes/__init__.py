"""One router per noun, all mounted under :data:`headway.server.app.API_PREFIX`."""
