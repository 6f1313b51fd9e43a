"""Browser tests: a real JupyterLab (with real-time collaboration) driven by Playwright in Chromium.

The fixtures are in conftest.py, the canvas helpers (flow files, selectors, gestures) in
canvas.py. Screenshots of each step land in test-artifacts/browser/<test name>/.
"""
