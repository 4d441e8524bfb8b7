"""The profile API and viewer (``omnistitch serve``): a view of the output topics, served."""
