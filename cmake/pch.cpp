// Translation unit that owns the precompiled header other targets reuse.
