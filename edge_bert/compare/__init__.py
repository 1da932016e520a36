"""Host side of the seed's comparison: the papers' claims and (later) the methods side by side."""
