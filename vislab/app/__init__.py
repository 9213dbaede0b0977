"""``vislab app``: a local web page showing both labs (Gradio; the optional extra ``vislab[app]``).

The functions behind each tab live apart from the Gradio layout so that they can be tested without a server:

- ``digits.py``: the Digits tab (read a drawing or a photo with every MNIST model);
- ``stereo_tab.py``: the Stereo tab (PSMNet and SGBM side by side on an uploaded pair or a bundled example);
- ``server.py``: the layout, the API endpoints ``predict_digit`` / ``predict_stereo`` and ``launch``.
"""
