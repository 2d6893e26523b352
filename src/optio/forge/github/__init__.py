"""GitHub (github.com and Enterprise Server) as a forge: see `optio.forge.github.forge`."""

from optio.forge.github.forge import GitHubForge

__all__ = ["GitHubForge"]
