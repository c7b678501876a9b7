"""One run of one loop: plan, the loop's steps, resume, access and the forge."""
