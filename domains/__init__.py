"""Domain packages: medical, points, lidar, skeleton, audio-visual. A domain never imports another."""
