"""Livecart transcode: ABR renditions, LL-HLS/HLS, recording and thumbnails."""
