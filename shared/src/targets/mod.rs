//! Communication targets: the people a user wants to reach.
