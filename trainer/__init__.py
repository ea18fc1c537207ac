"""The RL trading trainer."""
