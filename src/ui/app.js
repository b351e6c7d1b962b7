// Upload page logic (to be written).
