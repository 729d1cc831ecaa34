"""Running the detector over many images: batches and worker processes
(batch), `mtcnn detect` as plain functions (detect), progress and summary
(report), clean stops (interrupt)."""
