# The reference the image tests compare against: R's own predict() (or the example's score())
# run natively on the host, on the rows of a sample request, typed as rmodelpack.json says.
# Usage: Rscript --vanilla native_predict.R CONFIG.json MODEL.rds ROWS.json [SCRIPT.R]
# Prints {"values": <vector, or matrix as a list of rows>, "classes": <column names or null>}.
args <- commandArgs(trailingOnly = TRUE)
config <- jsonlite::fromJSON(args[[1]], simplifyVector = FALSE)
model <- readRDS(args[[2]])
rows <- jsonlite::fromJSON(args[[3]], simplifyDataFrame = FALSE)
script <- if (length(args) >= 4) args[[4]] else ""

for (package in config$packages) library(package, character.only = TRUE)

typed <- function(column, values) {
  switch(column$type,
    number = as.numeric(values),
    integer = as.integer(values),
    factor = factor(as.character(values), levels = unlist(column$levels)),
    string = as.character(values),
    boolean = as.logical(values),
    stop("unknown column type ", column$type)
  )
}

columns <- config$input$columns
frame <- data.frame(row.names = seq_along(rows))
for (column in columns) {
  frame[[column$name]] <- typed(column, unlist(lapply(rows, `[[`, column$name)))
}

prediction <- if (nzchar(script)) {
  scorer <- new.env()
  sys.source(script, envir = scorer)
  scorer[[config$scoring[["function"]]]](model, frame)
} else {
  do.call(predict, c(list(model, frame), config$scoring$predict_args))
}
# ranger's predict() returns an object; its predictions are the documented $predictions.
if (inherits(prediction, "ranger.prediction")) prediction <- prediction$predictions
# caret's predict(type = "prob") gives a data.frame with one column per class.
if (is.data.frame(prediction)) prediction <- as.matrix(prediction)

classes <- if (is.matrix(prediction)) colnames(prediction) else NULL
values <- if (is.matrix(prediction)) unname(split(prediction, row(prediction))) else unname(prediction)
if (is.factor(values)) values <- as.character(values)
cat(jsonlite::toJSON(list(values = values, classes = classes), digits = NA, null = "null"))
