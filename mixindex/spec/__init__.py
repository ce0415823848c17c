"""What the user wrote: the spec's config objects and the weight schedule (the loose-input edge)."""
