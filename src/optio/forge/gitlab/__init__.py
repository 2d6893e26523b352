"""GitLab (gitlab.com or self-managed) behind Optio's `Forge` port, through python-gitlab."""

from optio.forge.gitlab.forge import GitLabForge

__all__ = ["GitLabForge"]
