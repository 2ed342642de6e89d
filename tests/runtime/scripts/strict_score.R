# Scoring script of the runtime tests: predicts like the default scorer, and fails on purpose
# when crim is 99 so the tests can check how an error in user code is answered. Other crim
# values make it return what output.kind value cannot send: 98 texts, 97 Inf, 96 NaN, 95 a
# factor; 94 NA, the model's "no prediction".
score <- function(model, df) {
  if (any(df$crim == 99, na.rm = TRUE)) stop("crim 99 is the runtime tests' failure trigger")
  predictions <- stats::predict(model, df)
  odd <- which(df$crim %in% 94:98)
  if (length(odd) == 0L) return(predictions)
  switch(as.character(df$crim[[odd[[1]]]]),
    "98" = as.character(predictions),
    "97" = replace(predictions, odd, Inf),
    "96" = replace(predictions, odd, NaN),
    "95" = factor(round(predictions)),
    "94" = replace(predictions, odd, NA)
  )
}
