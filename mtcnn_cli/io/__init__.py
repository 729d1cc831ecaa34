"""Files in and out: reading images (images), from PATHs to the image list
(inputs), the output formats (output), annotated copies (draw), atomic writes
and appends (atomic)."""
