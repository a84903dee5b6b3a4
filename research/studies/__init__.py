"""Recipe studies: scripts that produced the records under results/studies/."""
