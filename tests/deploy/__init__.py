"""The grown-up deployment: docker-compose.yml and the same pipeline on every deployment shape."""
