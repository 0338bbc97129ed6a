"""Back to the annotators: predictions as CVAT and Label Studio import them, and the pictures to label next."""
