"""Capability links (seed 001): publish, fetch and collect through a link store."""

# The longest a link may live (about ten years): a longer --expires is refused where it is read, so
# no expiry is stored that the platform's time_t cannot show (attack round 49t (3)).
LONGEST_EXPIRY = 3653 * 86400
