"""The FUSE side: pyfuse3 operations, the mount lifecycle, the control socket."""
