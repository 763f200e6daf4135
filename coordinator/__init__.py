"""The genogate coordinator: registry of nodes and studies, grants, fan-out and combination."""
