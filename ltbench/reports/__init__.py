"""Tables, figures, shifted and post-hoc evaluation, published rows and analysis: everything made
from stored records.
"""
