"""The SoftTeacher meta-architecture and its pieces."""
