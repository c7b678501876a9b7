"""Reports of a run: JUnit XML for CI test views, markdown and HTML for humans."""
